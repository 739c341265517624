"""The review workbench: clinical staff confirm and correct what the pipeline doubted."""
