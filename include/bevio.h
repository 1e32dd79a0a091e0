/*
 * bevio: two shortcuts around libevent 2.1's socket bufferevents, for plain (not TLS) sockets,
 * where its defaults cost system calls on every request:
 * - it reads at most 4096 bytes per readiness (EVBUFFER_MAX_READ) after an FIONREAD ioctl, so a
 *   16 KiB response takes four loop turns and eight calls: bevio_read_more() takes the rest in
 *   one readv when a full read came in;
 * - it writes only on the next loop turn, arming the write event when data is queued and
 *   disarming it once written (two epoll_ctl calls per response): bevio_flush() writes at once,
 *   and when the socket took everything the arming is cancelled before it reaches the kernel
 *   (the worker's loop batches event changes per turn). HAProxy and nginx write the same way.
 */
#ifndef TRIDENT_BEVIO_H
#define TRIDENT_BEVIO_H

#include <event2/bufferevent.h>
#include <stdbool.h>
#include <stddef.h>

/* When the input holds 4096 bytes or more (libevent's read was full), read what the socket
 * holds now, up to `room` more bytes. Returns -1 when the read met a socket error (a reset):
 * the caller reports it as libevent would (BEV_EVENT_READING | BEV_EVENT_ERROR), since the
 * kernel reports it only once. */
int bevio_read_more(struct bufferevent *bev, size_t room);

/* Write what the output holds now. Returns true when it is empty afterwards and the write event
 * was disarmed: the caller then does what its write callback would have done. */
bool bevio_flush(struct bufferevent *bev);

/* TLS bufferevents: libevent's own write runs when the write event fires, on the next loop turn
 * after an epoll round trip; make it run in this turn instead (the write event's callback is
 * activated, so OpenSSL's state machine stays libevent's), which also lets the arming of the
 * write event be cancelled before it reaches the kernel. */
void bevio_write_soon(struct bufferevent *bev);

#endif
