"""Model families: each a folder that trains, evaluates, exports and writes its card section; registered once here."""
