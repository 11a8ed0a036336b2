from scloop.cli import main

main()
