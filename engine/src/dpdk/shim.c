/*
 * uswitch DPDK shim: the few DPDK calls uswitch makes, as plain exported functions.
 *
 * Why a C file: rte_eth_rx_burst/tx_burst, the rte_pktmbuf_* helpers and rte_errno are
 * static inline functions or macros in the DPDK headers, so Rust cannot call them directly;
 * the structs (rte_eth_conf, rte_eth_dev_info, rte_eth_stats, rte_mbuf) change layout
 * between DPDK releases, so Rust never sees them: they live only here, compiled against
 * the headers of the DPDK that is linked (pkg-config libdpdk). Rust sees opaque pointers,
 * integers and byte buffers.
 *
 * Every function returns 0 / a count on success or a negative errno; nothing here panics
 * or aborts on bad input.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_version.h>

int usw_errno(void) { return rte_errno; }

const char *usw_strerror(int err) { return rte_strerror(err < 0 ? -err : err); }

const char *usw_version(void) { return rte_version(); }

int usw_eal_init(int argc, char **argv) { return rte_eal_init(argc, argv); }

/* Registers the calling thread as an EAL thread (gets an lcore id, hence a mempool cache).
 * Returns the lcore id, or -1 when the thread stays unregistered (still works, no cache). */
int usw_thread_register(void) {
	if (rte_lcore_id() == LCORE_ID_ANY && rte_thread_register() != 0)
		return -1;
	return (int)rte_lcore_id();
}

struct rte_mempool *usw_pool_create(const char *name, unsigned n, unsigned cache, int socket) {
	return rte_pktmbuf_pool_create(name, n, cache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
}

unsigned usw_pool_avail(const struct rte_mempool *mp) { return rte_mempool_avail_count(mp); }

unsigned usw_pool_size(const struct rte_mempool *mp) { return mp->size; }

/* Bytes one mbuf of the pool can carry (data room minus headroom). */
unsigned usw_pool_room(struct rte_mempool *mp) {
	return rte_pktmbuf_data_room_size(mp) - RTE_PKTMBUF_HEADROOM;
}

int usw_dev_probe(const char *devargs) { return rte_dev_probe(devargs); }

int usw_port_by_name(const char *name, uint16_t *port) {
	return rte_eth_dev_get_port_by_name(name, port);
}

int usw_port_socket(uint16_t port) { return rte_eth_dev_socket_id(port); }

/* Configures `nq` rx and tx queues of `nrxd`/`ntxd` descriptors, rx from `mp`, enables
 * promiscuous mode and starts the port. On error writes the failed step to `what`. */
int usw_port_setup(uint16_t port, uint16_t nq, uint16_t nrxd, uint16_t ntxd,
		   struct rte_mempool *mp, char *what, size_t what_len) {
	struct rte_eth_dev_info info;
	struct rte_eth_conf conf;
	int rc, socket = rte_eth_dev_socket_id(port);
	uint16_t q;

	memset(&conf, 0, sizeof(conf));
	rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0) {
		snprintf(what, what_len, "rte_eth_dev_info_get");
		return rc;
	}
	if (nq > info.max_rx_queues || nq > info.max_tx_queues) {
		snprintf(what, what_len, "%u queues requested, device %s has at most %u rx / %u tx",
			 nq, info.driver_name, info.max_rx_queues, info.max_tx_queues);
		return -EINVAL;
	}
	if (nq > 1 && (info.flow_type_rss_offloads & RTE_ETH_RSS_IP)) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads & RTE_ETH_RSS_IP;
	}
	rc = rte_eth_dev_configure(port, nq, nq, &conf);
	if (rc != 0) {
		snprintf(what, what_len, "rte_eth_dev_configure");
		return rc;
	}
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrxd, &ntxd);
	if (rc != 0) {
		snprintf(what, what_len, "rte_eth_dev_adjust_nb_rx_tx_desc");
		return rc;
	}
	for (q = 0; q < nq; q++) {
		rc = rte_eth_rx_queue_setup(port, q, nrxd, socket < 0 ? SOCKET_ID_ANY : socket,
					    NULL, mp);
		if (rc != 0) {
			snprintf(what, what_len, "rte_eth_rx_queue_setup %u", q);
			return rc;
		}
		rc = rte_eth_tx_queue_setup(port, q, ntxd, socket < 0 ? SOCKET_ID_ANY : socket,
					    NULL);
		if (rc != 0) {
			snprintf(what, what_len, "rte_eth_tx_queue_setup %u", q);
			return rc;
		}
	}
	rc = rte_eth_promiscuous_enable(port);
	if (rc != 0 && rc != -ENOTSUP) {
		snprintf(what, what_len, "rte_eth_promiscuous_enable");
		return rc;
	}
	rc = rte_eth_dev_start(port);
	if (rc != 0) {
		snprintf(what, what_len, "rte_eth_dev_start");
		return rc;
	}
	return 0;
}

/* Without `remove`: only stops the port (a device that existed before uswitch used it, e.g.
 * probed by the EAL from -a/--vdev, stays available under its name for the next port add).
 * With `remove`: stops, closes and detaches the device (rte_dev_remove), so the same devargs
 * can be probed again. */
int usw_port_close(uint16_t port, int remove) {
	struct rte_eth_dev_info info;
	struct rte_device *dev = NULL;
	int rc;

	if (!remove)
		return rte_eth_dev_stop(port);
	if (rte_eth_dev_info_get(port, &info) == 0)
		dev = info.device;
	rte_eth_dev_stop(port);
	rc = rte_eth_dev_close(port);
	if (dev != NULL) {
		int r2 = rte_dev_remove(dev);
		if (rc == 0)
			rc = r2;
	}
	return rc;
}

int usw_port_driver(uint16_t port, char *out, size_t len) {
	struct rte_eth_dev_info info;
	int rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0)
		return rc;
	snprintf(out, len, "%s", info.driver_name ? info.driver_name : "?");
	return 0;
}

int usw_port_mac(uint16_t port, uint8_t out[6]) {
	struct rte_ether_addr a;
	int rc = rte_eth_macaddr_get(port, &a);
	if (rc == 0)
		memcpy(out, a.addr_bytes, 6);
	return rc;
}

/* Link state without waiting: returns 1 up / 0 down (negative errno on error); speed in Mb/s. */
int usw_port_link(uint16_t port, uint32_t *speed) {
	struct rte_eth_link l;
	int rc;
	memset(&l, 0, sizeof(l));
	rc = rte_eth_link_get_nowait(port, &l);
	if (rc != 0)
		return rc;
	*speed = l.link_speed;
	return l.link_status == RTE_ETH_LINK_UP ? 1 : 0;
}

/* ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf. */
int usw_port_stats(uint16_t port, uint64_t out[8]) {
	struct rte_eth_stats s;
	int rc = rte_eth_stats_get(port, &s);
	if (rc != 0)
		return rc;
	out[0] = s.ipackets;
	out[1] = s.opackets;
	out[2] = s.ibytes;
	out[3] = s.obytes;
	out[4] = s.imissed;
	out[5] = s.ierrors;
	out[6] = s.oerrors;
	out[7] = s.rx_nombuf;
	return 0;
}

int usw_port_stats_reset(uint16_t port) { return rte_eth_stats_reset(port); }

uint16_t usw_rx_burst(uint16_t port, uint16_t q, struct rte_mbuf **pkts, uint16_t n) {
	return rte_eth_rx_burst(port, q, pkts, n);
}

uint16_t usw_tx_burst(uint16_t port, uint16_t q, struct rte_mbuf **pkts, uint16_t n) {
	return rte_eth_tx_burst(port, q, pkts, n);
}

/* One segment of a received mbuf chain: data pointer and length; returns the next segment
 * (NULL at the end). */
struct rte_mbuf *usw_mbuf_seg(struct rte_mbuf *m, const uint8_t **data, uint32_t *len) {
	*data = rte_pktmbuf_mtod(m, const uint8_t *);
	*len = m->data_len;
	return m->next;
}

uint32_t usw_mbuf_pkt_len(const struct rte_mbuf *m) { return m->pkt_len; }

void usw_mbuf_free_bulk(struct rte_mbuf **m, unsigned n) { rte_pktmbuf_free_bulk(m, n); }

int usw_mbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **m, unsigned n) {
	return rte_pktmbuf_alloc_bulk(mp, m, n);
}

/* The writable data area of a fresh mbuf (after the headroom) and its size. */
uint8_t *usw_mbuf_room(struct rte_mbuf *m, uint32_t *room) {
	*room = rte_pktmbuf_tailroom(m);
	return rte_pktmbuf_mtod(m, uint8_t *);
}

void usw_mbuf_set_len(struct rte_mbuf *m, uint32_t len) {
	m->data_len = (uint16_t)len;
	m->pkt_len = len;
}
