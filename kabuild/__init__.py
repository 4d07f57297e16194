"""kabuild: reproducible pacman package builds for a fleet of Arch Linux ARM boards."""

__version__ = "0.1.0"
