"""One module per report section: each turns summary.json and the samples table into the plain
data its part of the template shows."""
