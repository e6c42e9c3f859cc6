"""Stand-in inputs for a configuration: every dataset it names in its official folder layout and file naming,
filled with small seeded synthetic images, and every weight file in its official key layout, file name and
architecture size, with seeded random values. They exercise the real code paths (loaders, prepare steps,
full-size networks); their numbers mean nothing. Only an explicit `run.standins: true` accepts them."""
