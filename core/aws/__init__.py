"""AWS adapters: boto3 clients with the project's retry policy, and table definitions."""
