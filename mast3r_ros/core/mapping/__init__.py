"""Offline / incremental mapping: MASt3R sparse global alignment (MASt3R-SfM back end).

A build is ``plan -> compute -> gather -> align`` (one module per step)::

    plan.plan_build           image content keys, scene graph (scene_graph.make_pairs),
                              cache lookups
    pairwise.LocalPairCompute network + matches per missing pair, streamed into cache.PairCache
    ray_compute.RayPairCompute   the same on a Ray cluster (one model per worker; imports Ray)
    gather.gather_problem     cached pair halves -> problem.AlignmentProblem (canonical views,
                              focals, anchors, flat match arrays), bounded memory; check_connected
    kinematic.spanning_tree   rooted spanning tree of the camera chain (mst / hclust)
    sparse_ga.sparse_scene_optimize   coarse (3D matching) + refinement (2D reprojection)
    build.build_map           all of the above -> KeyframeMap (pixels produced on demand)

Memory: the pairwise stage keeps a bounded LRU of encoder outputs and writes each pair to disk as
soon as it is computed; the gather reads one image's half of one pair at a time. What grows with
the map is the optimiser's own data: per image its anchors (one per 8x8 block), per match two
points and a confidence, and for pairs that fall back to the regression loss the points of both
images. Measured slopes: ``benchmarks/bench_mapping_memory.py`` and the README.
"""
