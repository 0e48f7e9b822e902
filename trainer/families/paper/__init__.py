"""The paper's family: MFCC + contrast windows; CNN, CNN-LSTM, CNN-GRU or linear; recipe and network by CV."""
