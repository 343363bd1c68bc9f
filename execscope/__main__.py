from execscope.cli import main

main()
