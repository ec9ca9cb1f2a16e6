"""The HTTP adapter: request parameter declarations, response shapes and error mapping for the API function."""
