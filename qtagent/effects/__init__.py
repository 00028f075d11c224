"""Effects: carry out plans against the kernel, with retry and read-back."""
