"""What a run leaves behind: its output folder, results.json, trackers, model cards, the report
page and the push to the Hub."""
