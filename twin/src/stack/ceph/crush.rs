//! Deterministic placement in the spirit of CRUSH `straw2` with a host failure domain.
//!
//! Ceph's replicated rule `take <root>[~class]; chooseleaf firstn 0 type host; emit` picks
//! `size` distinct hosts, then one OSD of the device class under each host. straw2 draws,
//! for each item, `ln(u) / weight` from a hash of (input, item) and takes the largest: a
//! weighted rendezvous hash, so removing an item only moves the PGs that had chosen it.
//! The model does the same with its own hash (so placements differ from a real cluster's,
//! but have the same properties):
//! - a host is a candidate if it has at least one OSD of the class that is `in`
//!   (CRUSH rejects `out` OSDs, whose reweight is 0, and retries);
//! - `down` OSDs are still chosen by CRUSH (the *raw* set); the *up* set drops them
//!   without replacement, which is why a down-but-in OSD leaves its PGs undersized
//!   until it is marked out (Ceph docs, "Monitoring OSDs and PGs").

use super::model::DeviceClass;

/// splitmix64 finaliser: a good, fast 64-bit mix.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn hash3(a: u64, b: u64, c: u64) -> u64 {
    mix(mix(mix(a) ^ b.rotate_left(21)) ^ c.rotate_left(42))
}

/// A number in [0, 1) from a hash.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// straw2's draw: `ln(u) / w` with u in (0, 1]; the largest draw wins.
fn straw2(h: u64, weight: f64) -> f64 {
    if weight <= 0.0 {
        return f64::NEG_INFINITY;
    }
    let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    u.ln() / weight
}

/// One OSD as placement sees it.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub id: i32,
    pub class: DeviceClass,
    pub weight: f64,
    pub is_in: bool,
}

/// One host bucket with its OSDs.
#[derive(Clone, Debug)]
pub struct Bucket {
    pub id: i32,
    pub leaves: Vec<Leaf>,
}

/// The raw CRUSH mapping of PG `ps` of pool `pool`: up to `size` OSDs on distinct hosts,
/// of `class` (any class when None), primary first.
pub fn place(
    pool: u32,
    ps: u32,
    size: u32,
    class: Option<DeviceClass>,
    hosts: &[Bucket],
) -> Vec<i32> {
    let x = hash3(u64::from(pool), u64::from(ps), 0x63_72_75_73_68);
    let eligible = |l: &Leaf| class.is_none_or(|c| c == l.class);
    // Shadow-tree host weight: the crush weights of the class's OSDs under the host.
    let mut ranked: Vec<(f64, &Bucket)> = hosts
        .iter()
        .map(|b| {
            let w: f64 = b
                .leaves
                .iter()
                .filter(|l| eligible(l))
                .map(|l| l.weight)
                .sum();
            (straw2(hash3(x, b.id as i64 as u64, 1), w), b)
        })
        .filter(|(d, _)| d.is_finite())
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    let mut out = Vec::new();
    for (_, bucket) in ranked {
        if out.len() as u32 >= size {
            break;
        }
        let leaf = bucket
            .leaves
            .iter()
            .filter(|l| eligible(l) && l.is_in)
            .map(|l| {
                (
                    straw2(hash3(x, l.id as i64 as u64, 2), l.weight.max(1e-9)),
                    l.id,
                )
            })
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
        if let Some((_, id)) = leaf {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod t {
    use super::*;

    fn hosts(in_: &[bool]) -> Vec<Bucket> {
        (0..3)
            .map(|h| Bucket {
                id: -3 - 2 * h,
                leaves: vec![
                    Leaf {
                        id: 2 * h,
                        class: DeviceClass::Nvme,
                        weight: 1.0,
                        is_in: in_[(2 * h) as usize],
                    },
                    Leaf {
                        id: 2 * h + 1,
                        class: DeviceClass::Hdd,
                        weight: 4.0,
                        is_in: in_[(2 * h + 1) as usize],
                    },
                ],
            })
            .collect()
    }

    #[test]
    fn distinct_hosts_and_class() {
        let hs = hosts(&[true; 6]);
        for ps in 0..64 {
            let p = place(2, ps, 2, Some(DeviceClass::Nvme), &hs);
            assert_eq!(p.len(), 2);
            assert!(p.iter().all(|o| o % 2 == 0));
            assert_ne!(p[0] / 2, p[1] / 2);
            let p = place(3, ps, 3, Some(DeviceClass::Hdd), &hs);
            assert_eq!(p.len(), 3);
            assert!(p.iter().all(|o| o % 2 == 1));
        }
    }

    #[test]
    fn out_osd_moves_only_its_pgs() {
        let all = hosts(&[true; 6]);
        let without0 = hosts(&[false, true, true, true, true, true]);
        let mut moved = 0;
        for ps in 0..64 {
            let a = place(2, ps, 2, Some(DeviceClass::Nvme), &all);
            let b = place(2, ps, 2, Some(DeviceClass::Nvme), &without0);
            if a.contains(&0) {
                moved += 1;
                assert!(!b.contains(&0));
                assert_eq!(b.len(), 2);
            } else {
                assert_eq!(a, b, "a PG without osd.0 must not move");
            }
        }
        assert!(moved > 10);
        // Any-class rule: the host keeps a replica on its other OSD.
        for ps in 0..8 {
            let b = place(1, ps, 3, None, &without0);
            assert_eq!(b.len(), 3);
            assert!(!b.contains(&0));
        }
    }
}
