"""Everything that imports Qt. Talks to the core only through engine objects."""
