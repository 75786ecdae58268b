"""Analysis that reads the activation stores: statistics, activation examples, decoder
neighbours, co-occurrence, the feature map and contrast search."""
