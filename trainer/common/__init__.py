"""What every model family uses: paths, the labelled data and its splits, scoring, export, reports, chain tables."""
