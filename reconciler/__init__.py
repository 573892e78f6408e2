"""The brain of pcompose: stack files in, plans out, the loop, the agent and the CLI."""
