"""Front-ends: audio to feature frames, incrementally (MFCC + contrast, musicnn's log-mel), chosen by the model file."""
