/* Placeholder: the preload library is written under issue 2. */
