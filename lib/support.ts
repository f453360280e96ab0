// Filled in by its issue; an empty module keeps the build green meanwhile.
export {};
