"""Offline / incremental mapping: MASt3R sparse global alignment (MASt3R-SfM back end).

Pipeline (one module per stage)::

    scene_graph.make_pairs       which pairs (complete, swin-N, logwin-N, oneref-I, retrieval-Na-k)
    pairwise.compute_pairs       network + matches per pair, content-addressed disk cache
    canonical.build_problem      canonical view per image, focal, anchors, flat match arrays
    kinematic.spanning_tree      rooted spanning tree of the camera chain (mst / hclust)
    sparse_ga.sparse_scene_optimize   coarse (3D matching) + refinement (2D reprojection)
    build.build_map              images -> KeyframeMap (then backend.prepare_map + save_map)

Beyond one machine (design, not implemented): the pairwise stage is embarrassingly parallel and
its cache is content-addressed (file name = hash of both images' network tensors, the model id and
the matching settings), so a Ray job can map ``infer_pair`` over pair shards on GPU workers that
each hold the model and write ``.npz`` files to a shared store (object store / NFS) with the same
names; the alignment then runs on one machine over the gathered files (cache hits only). The
alignment itself is what limits scale: its state is O(images x anchors + matches) (per image
h*w anchors, i.e. 3072 at 512x384, plus the matched points of all its pairs), every iteration
touches all matches, and the number of matches grows with pairs per image (scene-graph degree).
Measured growth on synthetic inputs: ``benchmarks/bench_mapping.py``.
"""
