"""The paper's family: MFCC + spectral contrast windows; CNN, CNN-LSTM, CNN-GRU or linear; recipe chosen by CV."""
