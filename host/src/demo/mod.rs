//! The demo MCP server: a real stdio server with the seed guide's task-management tools.
