"""IDS-DRR: flood-risk inputs from Sentinel, IMD rainfall and Bhuvan imagery."""
