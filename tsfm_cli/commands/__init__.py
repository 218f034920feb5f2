"""The thin CLI layer: one module per subcommand; each parses options, calls one stage function
and renders its result. Stage packages are imported inside the command functions so that
`tsfm --help` and the data stages never pay for importing torch."""
