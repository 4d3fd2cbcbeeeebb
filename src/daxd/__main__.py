from daxd.cli import main

main()
