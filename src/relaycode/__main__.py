from relaycode.cli import main

main()
