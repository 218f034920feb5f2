from tsfm_cli.cli import main

main()
