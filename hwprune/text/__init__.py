"""The text-classification task: data, vocabulary, the TextCNN and its training."""
