"""The operator's unit tests: pure logic over plain dicts, no cluster."""
