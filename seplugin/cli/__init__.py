"""The command-line tools' plumbing: reading a config and checking it before any work
(:mod:`.config`) and the console output (:mod:`.console`). Nothing here is imported by
``import seplugin``."""
