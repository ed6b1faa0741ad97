"""The write protocol (docs/DESIGN.md, "The write protocol"): plan, lock and fence, journal, points
first, commit, retire, recovery, the one guarded delete, the model roles a commit is fenced on.
Built on `..stores` only."""
