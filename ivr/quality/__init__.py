"""Quality assurance: random samples of contacts per agent, scorecards as data, calibration."""
