"""The embedded deployment: one machine, the log as files in a data directory (`easysched run`)."""
