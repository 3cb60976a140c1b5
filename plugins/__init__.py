"""Built-in plugins. Each module holds one plugin class and its options schema; they import only `gateway_engine`."""
