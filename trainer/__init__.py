"""`moodstream-train` and `make models`: data, splits, training, int8 export and the model cards."""
