"""C{python -m smtpsession}: the same as the C{smtpsession} command."""

from smtpsession.cli import main

if __name__ == "__main__":
    main()
