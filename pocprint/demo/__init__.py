"""Demo and test fixtures: real OctoPrint servers driving OctoPrint's virtual printer."""
