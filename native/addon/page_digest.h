// A fast 64-bit digest of one page (of any size that is a multiple of 32 bytes: the
// kernel's, 4 to 64 KiB), for counting identical pages.
// Four independent lanes keep the multipliers busy in parallel; every round is a
// bijection of the lane for a given input word, so two pages that differ in one
// word always leave that lane in different states.
#ifndef KSM_PAGE_DIGEST_H
#define KSM_PAGE_DIGEST_H

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace page_digest {

struct Digest {
  uint64_t value;  // never 0: the census uses 0 for an empty slot
  bool zero;       // every byte of the page is 0
};

inline uint64_t RotateLeft(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Odd constants with well-spread bits (digits of pi and e, made odd).
constexpr uint64_t kMulA = 0x243f6a8885a308d3ULL;
constexpr uint64_t kMulB = 0xb7e151628aed2a6bULL;
constexpr uint64_t kMulC = 0x9e3779b97f4a7c15ULL;

inline uint64_t Round(uint64_t lane, uint64_t word) { return RotateLeft(lane ^ (word * kMulA), 29) * kMulB; }

// Spreads every input bit over the whole output.
inline uint64_t Avalanche(uint64_t x) {
  x ^= x >> 31;
  x *= kMulC;
  x ^= x >> 29;
  x *= kMulA;
  x ^= x >> 32;
  return x;
}

inline Digest DigestPage(const unsigned char* page, std::size_t page_size) {
  uint64_t lane0 = 0x13198a2e03707345ULL, lane1 = 0xa4093822299f31d1ULL;
  uint64_t lane2 = 0x082efa98ec4e6c89ULL, lane3 = 0x452821e638d01377ULL;
  uint64_t any_bits = 0;
  for (std::size_t offset = 0; offset < page_size; offset += 32) {
    uint64_t w[4];
    std::memcpy(w, page + offset, sizeof w);  // no alignment assumption; compiles to plain loads
    any_bits |= w[0] | w[1] | w[2] | w[3];
    lane0 = Round(lane0, w[0]);
    lane1 = Round(lane1, w[1]);
    lane2 = Round(lane2, w[2]);
    lane3 = Round(lane3, w[3]);
  }
  uint64_t h = RotateLeft(lane0, 1) + RotateLeft(lane1, 17) + RotateLeft(lane2, 33) + RotateLeft(lane3, 49);
  h = Avalanche(h ^ Avalanche(lane0 ^ lane2) ^ (Avalanche(lane1 ^ lane3) * kMulC));
  return {h == 0 ? 1 : h, any_bits == 0};
}

}  // namespace page_digest

#endif
