"""`python -m logstream` runs the command line."""

from logstream.cli.main import main

if __name__ == "__main__":
    main()
