from kabuild.cli import entry

entry()
