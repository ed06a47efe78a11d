"""Clients of the hospital's own systems: PACS (DICOM), FHIR orders, the directory (LDAP)
and message delivery (SMTP, webhooks). Adapters: they never import services or web."""
