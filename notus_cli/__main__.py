from notus_cli.app import main

main()
