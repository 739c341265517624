"""De-identification: a research copy of an output folder under the HIPAA Safe Harbor rules."""
