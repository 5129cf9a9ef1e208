"""One module per screen of the playground: corpus, train, generate, runs."""
