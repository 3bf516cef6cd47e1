"""The local stack's processes: `posegen up` (startup, supervisor, usage text), the child-process
utilities it uses, and the warm pool that runs background changes in pre-loaded processes."""
