"""What a fitted attributor is used for: training-set attacks (Koh & Liang Sec. 5.2) and
debugging a group the model gets wrong (Sec. 5.1)."""
