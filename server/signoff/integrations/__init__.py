"""Other systems signoff tells about cards, and takes decisions from."""
