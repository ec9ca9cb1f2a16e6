"""weasis-link: launch the Weasis DICOM viewer from an OAuth2-protected call, serverless."""

__version__ = "0.1.0"
