"""Where the API lives below the server's base URL."""

API_PREFIX = "api/v1/epoch-training"
