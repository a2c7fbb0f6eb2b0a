"""What every wing uses, written once: errors, I/O, config, progress, plotting, seeding."""
