"""FHIR assembly: one patient's coded entities -> validated R4B resources."""

from pipeline.assemble.fhir import (
    AssembledResource,
    AssemblyFailure,
    AssemblyResult,
    assemble_patient,
)

__all__ = ["AssembledResource", "AssemblyFailure", "AssemblyResult", "assemble_patient"]
