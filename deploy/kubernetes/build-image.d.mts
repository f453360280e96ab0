/** The image tag build-image.mjs imports: localhost/ksm-preload:VERSION. */
export const IMAGE: string;
/** Writes the image's root filesystem as a tarball; returns its path. */
export function buildRootfs(tarball?: string): string;
/** `podman import`s the tarball (podmanArgs go before the subcommand); returns the tag. */
export function importImage(tarball: string, podmanArgs?: string[]): string;
