/*
 * hex: one hexadecimal digit's value, for the few places that read hex text (token digests,
 * percent-encoding, stored ticket keys).
 */
#ifndef TRIDENT_HEX_H
#define TRIDENT_HEX_H

/* 0..15, or -1 when c is not a hex digit (either case). */
static inline int
hex_value(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

#endif
