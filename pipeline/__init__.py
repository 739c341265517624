"""medrec: paper medical records -> coded FHIR, as a Ray Data batch job."""

__version__ = "0.1.0"
